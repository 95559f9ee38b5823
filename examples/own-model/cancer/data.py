"""The task: scikit-learn's bundled breast-cancer data (569 tumours, 30 features, 2 classes).

``load()`` returns an :class:`lrlab.lab.Task`, built with :func:`lrlab.lab.make_task`, which
holds out the validation set and standardises every feature with the training set's statistics.
"""

from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from lrlab.lab import Task, make_task


def load() -> Task:
    x, y = load_breast_cancer(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    return make_task(
        "breast-cancer", x_train, y_train, x_test, y_test, num_classes=2, normalize="channel"
    )
