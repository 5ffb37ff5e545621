"""Built-in data: tokenizer and shards built from shipped text, shard I/O, bits-per-byte tables."""
