"""Image-text and evaluation data: readers for the formats users bring, and the built-in sets."""
