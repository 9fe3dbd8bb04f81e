"""The registry's main path works on each database: register, resolve, load, alias."""

from registry import Registry


def test_register_resolve_and_load(registry: Registry, iris, iris_model):
    X, _ = iris
    first = registry.register(iris_model, "iris", reference=X, alias="champion")
    second = registry.register(iris_model, "iris", reference=X)
    assert (first.version, second.version) == (1, 2)
    assert registry.get("iris").version == 2
    assert registry.get("iris@champion").version == 1
    assert registry.get("iris@latest").version == 2
    loaded = registry.load("iris:1")
    assert (loaded.predict(X) == iris_model.predict(X)).all()
