"""Drawing a model's program as a graph: the spec from the program, then a picture.

The graph spec comes from NumPyro's program inspection (``get_model_relations`` +
``generate_graph_specification``): nodes are sample sites, edges are the dependencies the program
actually has, plates group sites. With Graphviz's ``dot`` on the PATH the spec is drawn by
Graphviz (as ``numpyro.render_model`` does); without it, by networkx + matplotlib, layered by
topological generation, so ``--render`` works on a bare machine too.
"""

from __future__ import annotations

import pathlib
import shutil

import networkx as nx

from genzoo.runs import atomic_write, save_figure


def graph_spec(program, model_kwargs=None) -> dict:
    """NumPyro's graph specification of ``program(**model_kwargs)``:
    ``{"node_data": {site: {"is_observed", "distribution"}}, "edge_list": [(parent, child)], "plate_groups", ...}``."""
    from numpyro.infer.inspect import generate_graph_specification, get_model_relations

    relations = get_model_relations(program, model_kwargs=dict(model_kwargs or {}))
    return generate_graph_specification(relations)


def spec_to_digraph(spec: dict) -> nx.DiGraph:
    graph = nx.DiGraph()
    for node, data in spec["node_data"].items():
        graph.add_node(node, **data)
    graph.add_edges_from(spec["edge_list"])
    return graph


def render(spec: dict, path) -> pathlib.Path:
    """Draw ``spec`` to ``path`` (SVG or PNG, by suffix), atomically."""
    path = pathlib.Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in ("svg", "png", "pdf"):
        from inference.errors import DataError

        raise DataError(f"cannot render to {path.name!r}: use a .svg, .png or .pdf file name")
    if shutil.which("dot"):
        from numpyro.infer.inspect import render_graph

        return atomic_write(path, render_graph(spec).pipe(format=fmt))
    return _render_matplotlib(spec, path)


def _render_matplotlib(spec: dict, path: pathlib.Path) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graph = spec_to_digraph(spec)
    for layer, nodes in enumerate(nx.topological_generations(graph)):
        for node in nodes:
            graph.nodes[node]["layer"] = layer
    pos = nx.multipartite_layout(graph, subset_key="layer", align="horizontal", scale=-1)
    width = max(6.0, 1.2 * max(len(g) for g in nx.topological_generations(graph)))
    height = max(4.0, 1.1 * sum(1 for _ in nx.topological_generations(graph)))
    fig, ax = plt.subplots(figsize=(min(width, 40), min(height, 40)))
    observed = [n for n, d in graph.nodes(data=True) if d.get("is_observed")]
    latent = [n for n in graph.nodes if n not in observed]
    style = dict(node_size=900, edgecolors="black", ax=ax)
    nx.draw_networkx_nodes(graph, pos, nodelist=latent, node_color="white", **style)
    nx.draw_networkx_nodes(graph, pos, nodelist=observed, node_color="lightgrey", **style)
    nx.draw_networkx_edges(graph, pos, ax=ax, arrows=True, arrowsize=12, node_size=900)
    nx.draw_networkx_labels(graph, pos, ax=ax, font_size=7)
    plates = {p: ns for p, ns in spec.get("plate_groups", {}).items() if p is not None and ns}
    if plates:
        ax.set_title("plates: " + "; ".join(f"{p} ({', '.join(ns[:4])}{'...' if len(ns) > 4 else ''})"
                                            for p, ns in plates.items()), fontsize=8)
    ax.axis("off")
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
