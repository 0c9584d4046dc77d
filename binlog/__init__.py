"""The contract shared by every part: the record envelope and its codec, partition keys,
attribute-value validation and sizing, the topology file, and the error types."""
