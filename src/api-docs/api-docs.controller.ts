import { Controller, Get, Header, NotFoundException, Param, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Public } from '../merchants/public.decorator.js';
import { loadOpenApiDocuments } from './openapi-document.js';

/** Where swagger-ui's files are served from. */
const DOCS_ASSETS = 'docs/assets';

/** The files of swagger-ui-dist the page loads, and their types. */
const ASSET_TYPES = new Map([
  ['swagger-ui.css', 'text/css; charset=utf-8'],
  ['swagger-ui-bundle.js', 'text/javascript; charset=utf-8'],
]);

/**
 * The page's own script, a file rather than inline (the page's CSP runs no inline
 * script). The API key typed into "Authorize" lives in the page's memory only:
 * not kept in localStorage, where any script of this origin could read it later.
 */
const DOCS_SCRIPT = `window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#docs',
  deepLinking: true,
  persistAuthorization: false,
});
`;
const require = createRequire(import.meta.url);

const DOCS_PAGE = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>Idempotent payments API</title>
    <link rel="stylesheet" href="/${DOCS_ASSETS}/swagger-ui.css" />
  </head>
  <body>
    <div id="docs"></div>
    <script src="/${DOCS_ASSETS}/swagger-ui-bundle.js"></script>
    <script src="/${DOCS_ASSETS}/docs.js"></script>
  </body>
</html>
`;

/** The API's own description, from the committed openapi.yaml: no API key needed. */
@Controller()
@Public()
export class ApiDocsController {
  private readonly documents = loadOpenApiDocuments();
  /** Read on first use (the bundle is 1.5 MB), then served from memory. */
  private readonly assets = new Map<string, Buffer>();

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

  @Get(`${DOCS_ASSETS}/:file`)
  asset(
    @Param('file') file: string,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Buffer | string {
    if (file === 'docs.js') {
      reply.header('Content-Type', 'text/javascript; charset=utf-8');
      return DOCS_SCRIPT;
    }
    const type = ASSET_TYPES.get(file);
    if (type === undefined) throw new NotFoundException();
    let content = this.assets.get(file);
    if (!content) {
      const directory = path.dirname(require.resolve('swagger-ui-dist/package.json'));
      content = readFileSync(path.join(directory, file));
      this.assets.set(file, content);
    }
    reply.header('Content-Type', type).header('Cache-Control', 'public, max-age=3600');
    return content;
  }
}
