"""DEX training: 101-way age softmax heads, K members on bootstrap samples (the DEX ensemble-by-splits).

On a CPU the heads are trained on frozen, cached backbone features (``fit_heads``); on a GPU whole networks can be
fine-tuned from images with augmentation (``full``). Data comes from a labelled folder or IMDB-WIKI's .mat
(``imdbwiki``).
"""
