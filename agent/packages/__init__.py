"""Model packages: manifest, signature keys, ONNX session and the package manager."""
