"""First-party ekd plugins: models, datasets, distillers and augmentations, registered like any other."""
