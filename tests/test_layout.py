"""The layout the design card promises: a top level of its scripts, and no import circle through config
(config reads the attacks, defenses and models registries, so none of those may import config back)."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_LEVEL = {'main.py', 'train_badnet.py', 'config.py', 'data_loader.py', 'at.py', 'reproduce.py',
             }
BELOW_CONFIG = ('attacks', 'defenses', 'models', 'utils')


def python_files(package):
    for folder, _, names in os.walk(os.path.join(ROOT, package)):
        yield from (os.path.join(folder, n) for n in sorted(names) if n.endswith('.py'))


def imported_modules(path):
    """Every module a file imports, at the top or inside a function (a lazy import is still a circle)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


def test_the_top_level_holds_only_the_design_cards_scripts():
    scripts = {n for n in os.listdir(ROOT) if n.endswith('.py')}
    assert scripts <= TOP_LEVEL, f'move these into a package: {sorted(scripts - TOP_LEVEL)}'


def test_nothing_config_reads_imports_config():
    offenders = [f'{os.path.relpath(path, ROOT)} imports {module}'
                 for package in BELOW_CONFIG for path in python_files(package)
                 for module in imported_modules(path) if module == 'config' or module.startswith('config.')]
    assert not offenders, offenders


def test_the_check_finds_a_lazy_import(tmp_path):
    (tmp_path / 'lazy.py').write_text('def main():\n    import config\n    from config import parse\n')
    assert list(imported_modules(tmp_path / 'lazy.py')) == ['config', 'config']
