# Mutant of `TwoLayerNet`: forgets to backpropagate through the ReLU.
class TwoLayerNet:
    """A two-layer classifier: affine - ReLU - affine - softmax cross-entropy, with L2 weight decay.

    With X of shape (N, D):  scores = relu(X W1 + b1) W2 + b2, of shape (N, C).

    Attributes:
        params: dict of float64 arrays, W1 (D, H), b1 (H,), W2 (H, C), b2 (C,). loss() reads them
            from this dict on every call (training updates them in place).
        reg: the L2 strength; the loss adds 0.5 * reg * (sum(W1**2) + sum(W2**2)) (no biases).

    Build it from the layers above, called by name (linear_forward, relu_forward,
    softmax_cross_entropy, linear_backward, relu_backward).
    """

    def __init__(self, input_dim, hidden_dim, num_classes, weight_scale=1e-2, seed=0, reg=0.0):
        """Weights: weight_scale times standard normal draws from one np.random.default_rng(seed)
        (W1 first, then W2); biases: zeros. Store reg as self.reg."""
        rng = np.random.default_rng(seed)
        self.params = {
            "W1": weight_scale * rng.standard_normal((input_dim, hidden_dim)),
            "b1": np.zeros(hidden_dim),
            "W2": weight_scale * rng.standard_normal((hidden_dim, num_classes)),
            "b2": np.zeros(num_classes),
        }
        self.reg = reg

    def loss(self, X, y=None):
        """Scores, or the loss and its gradients.

        Args:
            X: float64 array (N, D).
            y: None, or integer labels (N,).

        Returns:
            If y is None: scores, float64 array (N, C).
            Otherwise (loss, grads): loss a float (data loss + L2 term), grads a dict with the same
            keys and shapes as self.params.
        """
        p = self.params
        hidden_in, cache1 = linear_forward(X, p["W1"], p["b1"])
        hidden, cache_relu = relu_forward(hidden_in)
        scores, cache2 = linear_forward(hidden, p["W2"], p["b2"])
        if y is None:
            return scores

        data_loss, dscores = softmax_cross_entropy(scores, y)
        loss = data_loss + 0.5 * self.reg * (np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2))

        dhidden, dW2, db2 = linear_backward(dscores, cache2)
        dhidden_in = dhidden
        _, dW1, db1 = linear_backward(dhidden_in, cache1)
        grads = {
            "W1": dW1 + self.reg * p["W1"],
            "b1": db1,
            "W2": dW2 + self.reg * p["W2"],
            "b2": db2,
        }
        return float(loss), grads

    def predict(self, X):
        """Predicted class of each row of X: integer array (N,)."""
        return np.argmax(self.loss(X), axis=1)
