"""Command-line client that classifies images through the gateway's HTTP API."""
