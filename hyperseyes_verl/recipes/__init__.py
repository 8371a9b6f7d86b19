"""Two-stage HyperEyes training recipes: dry-run validation of the composed verl config (`hyperseyes recipe
validate`), the stage-1 SFT dataset class, and the stage-1 → stage-2 LoRA merge. The recipes themselves are the
YAML files and shell scripts in the repository's `recipes/` folder."""
