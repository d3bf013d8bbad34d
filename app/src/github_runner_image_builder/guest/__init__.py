"""What runs in the guest: the image contents, user-data, the console protocol, verification."""
