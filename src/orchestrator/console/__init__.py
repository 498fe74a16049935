"""The web console: static HTML, CSS and JavaScript modules served from the package."""
