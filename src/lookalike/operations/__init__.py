"""Work over a set of references: matching two sets, evaluating retrieval, the similarity graph, geometric verification."""
