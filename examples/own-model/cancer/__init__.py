"""The own-model example's user code: scikit-learn's breast-cancer data and a small MLP."""
