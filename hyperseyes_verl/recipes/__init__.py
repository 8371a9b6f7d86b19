"""Two-stage HyperEyes training recipes: dry-run validation of the composed verl config (`hyperseyes recipe
validate`) and the stage-1 → stage-2 LoRA merge (the SFT dataset class is an adapter: `verl/sft_dataset.py`).
The recipes themselves are the YAML files and shell scripts in the repository's `recipes/` folder."""
