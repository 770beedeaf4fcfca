# Mutant of `Value`: breadth-first walk from the output instead of a topological order.
def _as_value(other):
    """Wrap a Python number as a constant Value so that every operation sees two Values."""
    return other if isinstance(other, Value) else Value(other)


class Value:
    """A scalar that remembers how it was computed, for reverse-mode automatic differentiation.

    Attributes:
        data: the number (a Python float).
        grad: dL/d(this value) once backward() has run on the final output L (starts at 0.0).
        _prev: the Values this one was computed from (its children in the graph).
        _backward: a function that adds this node's contribution to the grads of its children,
            using the chain rule: child.grad += (local derivative) * self.grad.

    Every operation below builds a new Value `out`, records the operands as its children and sets
    `out._backward`. The given parts (__init__, __repr__) need no change.
    """

    def __init__(self, data, _children=(), _op=""):
        self.data = float(data)
        self.grad = 0.0
        self._prev = tuple(_children)
        self._op = _op
        self._backward = lambda: None

    def __repr__(self):
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"

    def __add__(self, other):
        """self + other (other a Value or a Python number)."""
        other = _as_value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def _backward():
            self.grad += out.grad
            other.grad += out.grad

        out._backward = _backward
        return out

    def __mul__(self, other):
        """self * other."""
        other = _as_value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def _backward():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = _backward
        return out

    def __pow__(self, exponent):
        """self ** exponent, for a Python number exponent (int or float)."""
        assert isinstance(exponent, (int, float)), "only powers by a Python number are supported"
        out = Value(self.data ** exponent, (self,), f"**{exponent}")

        def _backward():
            self.grad += exponent * self.data ** (exponent - 1) * out.grad

        out._backward = _backward
        return out

    def tanh(self):
        """tanh(self)."""
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def _backward():
            self.grad += (1.0 - t * t) * out.grad

        out._backward = _backward
        return out

    def relu(self):
        """max(0, self); the gradient at exactly 0 is 0."""
        out = Value(self.data if self.data > 0 else 0.0, (self,), "relu")

        def _backward():
            self.grad += (1.0 if self.data > 0 else 0.0) * out.grad

        out._backward = _backward
        return out

    def exp(self):
        """exp(self)."""
        out = Value(math.exp(self.data), (self,), "exp")

        def _backward():
            self.grad += out.data * out.grad

        out._backward = _backward
        return out

    def __neg__(self):
        """-self."""
        return self * -1.0

    def __radd__(self, other):
        """other + self, when other is a Python number."""
        return self + other

    def __sub__(self, other):
        """self - other."""
        return self + (-_as_value(other))

    def __rsub__(self, other):
        """other - self, when other is a Python number."""
        return _as_value(other) + (-self)

    def __rmul__(self, other):
        """other * self, when other is a Python number."""
        return self * other

    def __truediv__(self, other):
        """self / other."""
        return self * _as_value(other) ** -1

    def __rtruediv__(self, other):
        """other / self, when other is a Python number."""
        return _as_value(other) * self ** -1

    def backward(self):
        """Set self.grad = 1 and fill in .grad of every Value this one depends on.

        Visit the nodes in reverse topological order (a node before all of its children), so
        that every node's grad is complete before its _backward passes it on.
        """
        self.grad = 1.0
        queue, seen = [self], {self}
        while queue:
            node = queue.pop(0)
            node._backward()
            for child in node._prev:
                if child not in seen:
                    seen.add(child)
                    queue.append(child)
