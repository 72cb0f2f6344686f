// Umbrella header for the public API.
#pragma once

#include "tidemark/expr.h"
#include "tidemark/io.h"
#include "tidemark/run.h"
#include "tidemark/schema.h"
#include "tidemark/status.h"
#include "tidemark/table.h"
#include "tidemark/value.h"
