"""Teaching problems and their data: one idea per module, nothing downloaded.

    functions2d   2-D test functions (quadratic, Rosenbrock, Beale, saddle) + trajectories
    regression    linear regression by hand-written gradient descent vs least squares
    losses        MSE and cross-entropies written out (equal to torch.nn.functional)
    logistic      two-class logistic classification by gradient descent
    two_layer     a two-layer network with forward/backward by hand
    models        model factories shared with the distributed code (make_mlp)
    digits        sklearn digits with a train/validation split, loaders
    text          the shipped corpus, a character tokenizer, random-window batches
    transformer   a tiny character-level transformer
    inference     save/load a model; preprocess → forward → postprocess
"""

from hpclab.problems.digits import (
                                    DigitsSplit,
                                    digits_datasets,
                                    digits_loaders,
                                    load_digits_split,
                                    preprocess_digits,
)
from hpclab.problems.functions2d import (
                                    BEALE,
                                    FUNCTIONS,
                                    QUADRATIC,
                                    ROSENBROCK,
                                    SADDLE,
                                    Function2D,
                                    quadratic,
                                    trajectory,
)
from hpclab.problems.inference import load_model, postprocess, predict_digits, save_model
from hpclab.problems.logistic import fit_logistic, make_logistic_data
from hpclab.problems.models import make_mlp
from hpclab.problems.regression import (
                                    add_bias_column,
                                    gradient_descent,
                                    least_squares,
                                    make_linear_regression,
                                    minibatch_sgd,
                                    mse_gradient,
                                    mse_loss,
)
from hpclab.problems.text import CharBatches, CharTokenizer, load_text, text_loaders
from hpclab.problems.transformer import (
                                    TinyTransformer,
                                    TransformerConfig,
                                    generate,
                                    lm_loss,
                                    tiny_transformer,
)

__all__ = [
                                    "BEALE",
                                    "FUNCTIONS",
                                    "QUADRATIC",
                                    "ROSENBROCK",
                                    "SADDLE",
                                    "CharBatches",
                                    "CharTokenizer",
                                    "DigitsSplit",
                                    "Function2D",
                                    "TinyTransformer",
                                    "TransformerConfig",
                                    "add_bias_column",
                                    "digits_datasets",
                                    "digits_loaders",
                                    "fit_logistic",
                                    "generate",
                                    "gradient_descent",
                                    "least_squares",
                                    "lm_loss",
                                    "load_digits_split",
                                    "load_model",
                                    "load_text",
                                    "make_linear_regression",
                                    "make_logistic_data",
                                    "make_mlp",
                                    "minibatch_sgd",
                                    "mse_gradient",
                                    "mse_loss",
                                    "postprocess",
                                    "predict_digits",
                                    "preprocess_digits",
                                    "quadratic",
                                    "save_model",
                                    "text_loaders",
                                    "tiny_transformer",
                                    "trajectory",
]
