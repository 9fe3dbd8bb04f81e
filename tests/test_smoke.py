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


def test_module_level_register_and_load_use_the_default_home(home, iris, iris_model, monkeypatch):
    import registry

    monkeypatch.setattr(registry, "_default", None)
    X, _ = iris
    assert registry.register(iris_model, "iris", reference=X).version == 1
    assert (registry.load("iris").predict(X) == iris_model.predict(X)).all()
    assert registry.default_registry().settings.home == home
    registry.default_registry().close()
