"""The crfs filesystem: the model as files. Only crfs/fs/operations.py knows pyfuse3."""
