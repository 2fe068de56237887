"""Device allocation: the scheduler's structured-allocator semantics, plus topology scoring."""
