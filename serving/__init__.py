"""Model side: training, SavedModel export and the local model server."""
