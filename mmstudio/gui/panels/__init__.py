"""Task panels beside the image view: caption, ask, match."""
