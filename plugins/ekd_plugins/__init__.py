"""First-party ekd plugins: models, datasets, distillers, temperature rules and augmentations, registered
like any other."""
