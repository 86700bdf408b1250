"""MedQuAD XML -> clean records -> pandas/datasets table -> train/validation/test split by focus."""
