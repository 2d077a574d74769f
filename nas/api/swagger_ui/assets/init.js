// Swagger UI on this service's OpenAPI document, set up as FastAPI's own /docs page sets it
// up; a file rather than an inline script, so that the page's Content-Security-Policy can
// forbid inline scripts.
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
