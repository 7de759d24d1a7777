"""Drawing a model's program as a graph: the spec from the program, then a picture.

The graph spec comes from NumPyro's program inspection (``get_model_relations`` +
``generate_graph_specification``): nodes are sample sites, edges are the dependencies the program
actually has, plates group sites. With Graphviz's ``dot`` on the PATH the spec is drawn by
Graphviz (as ``numpyro.render_model`` does); without it, by networkx + matplotlib, layered by
topological generation, so ``--render`` works on a bare machine too. A structure the model
already holds as a networkx graph (a Bayesian network's DAG, an MRF's undirected graph) becomes
the same kind of spec through :func:`graph_to_spec`, so run reports draw it without tracing the program.
"""

from __future__ import annotations

import pathlib
import shutil

import networkx as nx

from genzoo.runs import atomic_write


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


def graph_to_spec(graph: nx.Graph, observed=()) -> dict:
    """A networkx graph (a BN's DAG, an MRF's undirected graph) as a spec like :func:`graph_spec`'s,
    ``observed`` nodes shaded; an undirected graph is marked ``"directed": False``."""
    observed = set(observed)
    return {"node_data": {str(n): {"is_observed": n in observed, "distribution": "Categorical"} for n in graph.nodes},
            "edge_list": [(str(u), str(v)) for u, v in graph.edges], "plate_groups": {None: [str(n) for n in graph]},
            "plate_data": {}, "directed": graph.is_directed()}


def render(spec: dict, path) -> pathlib.Path:
    """Draw ``spec`` to ``path`` (SVG or PNG, by suffix), atomically."""
    path = pathlib.Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in ("svg", "png", "pdf"):
        from inference.errors import DataError

        raise DataError(f"cannot render to {path.name!r}: use a .svg, .png or .pdf file name")
    return atomic_write(path, picture(spec, fmt))


def picture(spec: dict, fmt: str = "png", dpi: int = 100) -> bytes:
    """The bytes of ``spec`` drawn as ``fmt``: by Graphviz's ``dot`` when it is on the PATH (as
    ``numpyro.render_model`` does; directed graphs only), else by networkx + matplotlib."""
    if shutil.which("dot") and spec.get("directed", True):
        from numpyro.infer.inspect import render_graph

        return render_graph(spec).pipe(format=fmt)
    import io

    import matplotlib.pyplot as plt

    fig = figure(spec)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=fmt, bbox_inches="tight", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def figure(spec: dict):
    """``spec`` drawn by networkx + matplotlib: a DAG layered by topological generation, an
    undirected graph by a seeded spring layout; observed sites grey. Returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graph = spec_to_digraph(spec)
    directed = spec.get("directed", True)
    if directed:
        layers = list(nx.topological_generations(graph))
        for layer, nodes in enumerate(layers):
            for node in nodes:
                graph.nodes[node]["layer"] = layer
        pos = nx.multipartite_layout(graph, subset_key="layer", align="horizontal", scale=-1)
        width, height = max(6.0, 1.2 * max(map(len, layers))), max(4.0, 1.1 * len(layers))
    else:
        pos = nx.spring_layout(graph, seed=0)
        width = height = max(5.0, 0.6 * len(graph) ** 0.5 * 2)
    fig, ax = plt.subplots(figsize=(min(width, 40), min(height, 40)))
    observed = [n for n, d in graph.nodes(data=True) if d.get("is_observed")]
    latent = [n for n in graph.nodes if n not in observed]
    style = dict(node_size=900, edgecolors="black", ax=ax)
    nx.draw_networkx_nodes(graph, pos, nodelist=latent, node_color="white", **style)
    nx.draw_networkx_nodes(graph, pos, nodelist=observed, node_color="lightgrey", **style)
    nx.draw_networkx_edges(graph, pos, ax=ax, node_size=900, **(dict(arrows=True, arrowsize=12) if directed else
                                                                 dict(arrows=False)))
    nx.draw_networkx_labels(graph, pos, ax=ax, font_size=7)
    plates = {p: ns for p, ns in spec.get("plate_groups", {}).items() if p is not None and ns}
    if plates:
        ax.set_title("plates: " + "; ".join(f"{p} ({', '.join(ns[:4])}{'...' if len(ns) > 4 else ''})"
                                            for p, ns in plates.items()), fontsize=8)
    ax.axis("off")
    return fig
