import { Controller, Get, Header } from '@nestjs/common';
import { Public } from '../merchants/public.decorator.js';
import { loadOpenApiDocuments } from './openapi-document.js';

/** Where swagger-ui's files are served from (see configureApp). */
export const DOCS_ASSETS = '/docs/assets';

const DOCS_PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>Idempotent payments API</title>
    <link rel="stylesheet" href="${DOCS_ASSETS}/swagger-ui.css" />
  </head>
  <body>
    <div id="docs"></div>
    <script src="${DOCS_ASSETS}/swagger-ui-bundle.js"></script>
    <script>
      window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#docs', deepLinking: true, persistAuthorization: true });
    </script>
  </body>
</html>
`;

/** The API's own description, from the committed openapi.yaml: no API key needed. */
@Controller()
@Public()
export class DocsController {
  private readonly documents = loadOpenApiDocuments();

  @Get('openapi.yaml')
  @Header('Content-Type', 'application/yaml; charset=utf-8')
  yaml(): string {
    return this.documents.yaml;
  }

  @Get('openapi.json')
  @Header('Content-Type', 'application/json; charset=utf-8')
  json(): string {
    return this.documents.json;
  }

  /** Interactive docs (swagger-ui, served from this app: works offline). */
  @Get('docs')
  @Header('Content-Type', 'text/html; charset=utf-8')
  page(): string {
    return DOCS_PAGE;
  }
}
