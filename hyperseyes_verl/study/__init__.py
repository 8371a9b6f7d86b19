"""Learning-signal study: a seeded, CPU-sized check that TRACE / HDPO / OPD gating push a policy toward fewer
tool rounds without losing accuracy, using the project's reward code and verl's GRPO estimator.
Entry point: `hyperseyes study --out DIR` (cli.py); the model of the world is in world.py."""
