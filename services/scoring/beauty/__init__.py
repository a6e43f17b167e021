"""Global attractiveness: visual features of the age/gender members → a small trained head → score, word, spread.

Modules: ``features`` (penultimate activations of the scoring members via forward hooks), ``chips`` (data-set images
→ aligned chips), ``dataset`` (MEBeauty labels, duplicate merging, official split), ``head`` (ridge and DEX-style
heads, save/load), ``words`` (Howhot's six words), ``minors`` (withholding attractiveness from probable minors),
``evaluate`` (``evaluate_beauty``).
"""
