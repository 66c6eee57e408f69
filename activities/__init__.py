"""Activities: storage I/O, hashing, projection writes. Everything that touches the world."""
