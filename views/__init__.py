"""What the pages draw, one function per view."""
