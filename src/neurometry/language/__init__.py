"""Language models against human language processing: word surprisal (and through the logit lens, layer by
layer), word-level hidden states, and regressions of reading times on them."""
