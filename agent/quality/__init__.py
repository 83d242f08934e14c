"""The quality truth loop: lab results, predictions joined to them, model monitoring."""
