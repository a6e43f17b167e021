"""Face-detector networks (one file per architecture), their registry and the weight converters."""
