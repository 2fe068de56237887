"""ResourceSlices: the pure builder (inventory -> desired slices), the reconcile plan, and the
publisher that keeps the API server's slices equal to the desired ones."""
