"""Where users go past one machine: Triton model repositories and KServe manifests."""
