"""Data: the synthetic driving world, real-format readers/writers and the dataset builder."""
