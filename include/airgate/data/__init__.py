"""The data plane: landing files and SQL sources, collection, cleaning, Great Expectations checks, labels,
features."""
