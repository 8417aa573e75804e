"""Fine-tuning v1 / v2 on a user's data: data sets, augmentation, the training loop, checkpoints."""
