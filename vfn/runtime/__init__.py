"""Where the platform runs: Ray and storage.

  ray_setup     init_ray: a local instance unless an address is given, and the environment workers get
  worker_hooks  what every Ray worker process runs at start (kept light: imported dozens of times)
  storage       local paths and object-store URIs (s3://, gs://, ...) through pyarrow's filesystems
"""
