"""The multi-task ViT, its losses and metrics, recipes, evaluation and the one training entry point (runs unchanged under torchrun)."""
