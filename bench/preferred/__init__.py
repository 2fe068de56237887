"""GetPreferredAllocation benchmark: gpudra's device plugin against a go-gpuallocator baseline."""
