"""Making a bundle: data, the training pipeline, float training, QAT, export and the run folder."""
