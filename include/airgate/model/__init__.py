"""The model plane: predictors, the candidates (baseline, LightGBM, DKT), tuning, training and the gates."""
