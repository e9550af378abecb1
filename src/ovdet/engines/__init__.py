"""Where heavy per-image passes run besides this process: `ray_data` (Ray Data actor pools)."""
