from genzoo.cli import run

run()
