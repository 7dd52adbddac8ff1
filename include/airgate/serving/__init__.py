"""After promotion: batch scoring, monitoring (drift and decay) and the retraining decisions they lead to."""
