"""Stage-1 data: demo gallery, Parallel-Amenable synthesis, Progressive Rejection Sampling, verl parquet."""
