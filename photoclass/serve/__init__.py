"""Serving a trained model over HTTP, with a small web page."""
