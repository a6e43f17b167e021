"""Personal attractiveness ("Some like it hot", Rothe, Timofte & Van Gool, CVPR 2016).

Collaborative filtering with biases over (rater, face) ratings; a ridge regression from visual features into the
latent item space gives a brand-new face its item factors from its pixels; a new rater's factors are fitted in closed
form from their first ratings (with a demographic prior), online, one rating at a time.

Modules: ``mf`` (biased matrix factorisation, ALS), ``visual`` (features → item bias + factors), ``prior``
(demographics → rater prior), ``rater`` (online closed-form rater fit, JSON state), ``store`` (state persistence
port), ``picker`` (which faces to ask a rater next), ``model`` (the bundle the service loads), ``knn`` (visual
nearest-neighbour baseline), ``evaluate`` (``evaluate_personalization``).
"""
