"""The references: the collection's rows, embeddings, projection and index kept in step, and the two queries (k nearest, within a distance)."""
