"""The DRA kubelet plugin (node daemon): prepares allocated devices for containers through
CDI, keeps a crash-safe checkpoint, and publishes the node's ResourceSlices."""
